"""The base class of every error whose message is meant for the user as it stands."""


class UserError(Exception):
    """A problem the user can fix; its message is one clear sentence, shown without traceback."""
