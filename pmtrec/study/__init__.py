"""The study: planning a workflow config into jobs (plan), its checks, and where files live (paths)."""

from pmtrec.study.checks import StudyConfigError
from pmtrec.study.plan import Study, load_study

__all__ = ["Study", "StudyConfigError", "load_study"]
