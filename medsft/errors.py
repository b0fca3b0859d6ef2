"""The one exception type medsft raises for problems a user can fix (bad recipe, missing file, bad targets).

Entry points catch it and print its message as a single line instead of a traceback.
"""


class MedsftError(Exception):
    """A user-facing error: the message names the file, row or field and says what to do."""
