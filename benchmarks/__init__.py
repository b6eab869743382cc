"""The benchmark suite: measurements (ratios in one process), never timed tests."""
