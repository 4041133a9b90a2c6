"""Token lookup and REDCap's rights checks, with REDCap's exact refusals."""

from __future__ import annotations

import re
from datetime import date

from airflow_provider_redcap.emulator.formats import ApiError
from airflow_provider_redcap.emulator.project import Project, User

NO_PERMISSION = "You do not have permissions to use the API"
NO_EXPORT = "You do not have API Export privileges"
NO_IMPORT = "You do not have API Import/Update privileges"
NO_RANDOMIZE = "You do not have Randomize privileges"
NO_DELETE = "You do not have Delete Record privileges"
NO_DATA_EXPORT = (
    'The API request cannot complete because currently you have "No Access" data export rights. '
    "Higher level data export rights are required for this operation."
)
NO_LOGGING = (
    'The API request cannot complete because currently you do not have "Logging" privileges, '
    "which are required for this operation."
)
NO_DAG_RIGHTS = (
    "Insufficient user privileges: You must have 'API Export' privileges and 'Data Access Groups' "
    "privileges in the project."
)
NO_DAG_IMPORT_RIGHTS = (
    "Insufficient user privileges: You must have 'API Import/Update' privileges and 'Data Access Groups' "
    "privileges in the project."
)
NO_USER_RIGHTS = (
    "Insufficient user privileges: You must have 'API Export' privileges and 'User Rights' privileges "
    "in the project."
)
IN_DAG = (
    "You do not have permission to perform this action because you are currently assigned to a "
    "Data Access Group. Only users not assigned to a Data Access Group may do this."
)

_TOKEN = re.compile(r"^[A-Za-z0-9]+$")


def authenticate(project: Project, token: str, today: date | None = None) -> User:
    """The user owning ``token``; 403 for unknown tokens and expired rights.

    :param project: the project whose users are searched.
    :param token: the ``token`` parameter as posted.
    """
    user = next((u for u in project.users if u.token == token), None) if _TOKEN.match(token) else None
    if user is None or user.suspended:
        raise ApiError(403, NO_PERMISSION)
    if user.expiration:
        today = today or date.today()
        if str(user.expiration) <= today.isoformat():
            raise ApiError(
                403,
                "You do not have API rights because your privileges have expired for this project as of "
                f"{user.expiration}.",
            )
    return user


def require(user: User, right: str, message: str, status: int = 403) -> None:
    if not user.has(right):
        raise ApiError(status, message)
