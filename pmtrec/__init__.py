"""pmtrec: Personalized Multi-task Training for recommendation, and its baselines."""

__version__ = "0.1.0"
