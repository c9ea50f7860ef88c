"""User-facing errors.

Anything a user can cause (a bad config, a corrupt file, a wrong checkpoint) raises a
subclass of :class:`FramecastError` whose message names the file, key or value and
what was expected. The command line prints that message on one line and exits with
status 2; any other exception is a bug and keeps its traceback.
"""


class FramecastError(Exception):
    """An error caused by the user's input; printed as one line by the CLI."""


class ConfigError(FramecastError):
    """A config file, key or value is invalid."""


class DataError(FramecastError):
    """A dataset, image, video or shard is missing, corrupt or unsuitable."""


class CheckpointError(FramecastError):
    """A checkpoint is missing, corrupt or from another model kind or shape."""


class TrainingError(FramecastError):
    """Training cannot go on (for example a non-finite loss)."""


class ExportError(FramecastError):
    """A model cannot be exported, or the exported model disagrees with the original."""


class Preempted(FramecastError):
    """Training stopped on a scheduler's signal after saving a resumable checkpoint.

    ``exit_code`` is 128 + the signal number (143 for SIGTERM), as a shell reports a process
    ended by that signal, so a scheduler (or LSF's ``-Q``) sees the job did not finish."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
