"""Error types: each names the problem and the fix, and the CLI prints them without a traceback."""


class FewstepError(Exception):
    """Base class for fewstep's own errors."""


class PlanError(FewstepError, ValueError):
    """A solver plan is malformed or inconsistent (names the step and field)."""


class CheckpointError(FewstepError, ValueError):
    """A checkpoint file is missing fields, corrupt, or of an unknown kind."""


class DataError(FewstepError, ValueError):
    """A data set is missing, empty or of the wrong shape."""
