"""The one place where API failures become words for the model: what failed, why, and what to do next.

Every error code documented in `shared/api/*.md` has an entry (a test parses them); anything else falls
back to its HTTP status, and failures without an answer to their kind. The text is one line, never
includes a secret (it is scrubbed by the caller's redactor) and always ends with a next step. Whatever
the API said (its message, detail fields, request id, an unusual code) appears only through `quote`:
it is data, and cannot pass for our words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from purgewarden.clients.errors import ApiError
from purgewarden.safety.text import quote

SERVICE_NAMES = {"katapult": "Katapult", "vault": "Piiano Vault", "cocoon": "Cocoon Data"}

PREVIEW_AGAIN = "Preview again to see the current state before retrying."
TELL_USER = "Tell the user; this needs a change on their side before retrying."
UNKNOWN_FATE = "It is not known whether it was carried out; " + PREVIEW_AGAIN.lower()
DETAIL_ITEMS = 5
"""A detail list or mapping shows this many entries at most: one hostile field cannot flood the text."""


@dataclass(frozen=True)
class Entry:
    what: str
    next: str


KATAPULT: Mapping[str, Entry] = {
    "missing_api_token": Entry(
        "no API token was sent", "Set KATAPULT_API_TOKEN in the server's environment and restart it."
    ),
    "invalid_api_token": Entry(
        "the API token is not valid (it may not exist or may have expired)",
        "Ask the user for a valid token in KATAPULT_API_TOKEN, then restart the server.",
    ),
    "unauthorized_network_for_api_token": Entry(
        "the API token may not be used from this network (request came from {ip_address})",
        "Ask the user to allow this network for the token in Katapult, or use another token.",
    ),
    "invalid_capabilities_token": Entry(
        "the capabilities token is not valid, has expired or is wrongly signed",
        "Ask the user for a fresh token.",
    ),
    "scope_not_granted": Entry(
        "the API token lacks the scope {scopes}",
        "Ask the user to add that scope to the token, then preview again.",
    ),
    "permission_denied": Entry(
        "the token's identity is not permitted to do this{reason}",
        "Ask the user to grant the permission in Katapult or use another identity.",
    ),
    "rate_limit_reached": Entry(
        "the rate limit of {total_permitted} requests per minute was reached",
        "Wait a minute, then try again.",
    ),
    "service_unavailable": Entry("the service is temporarily unavailable", "Wait a minute, then try again."),
    "network_error": Entry(
        "a network error happened inside Katapult while carrying out the action",
        "Try again; " + PREVIEW_AGAIN.lower(),
    ),
    "invalid_argument": Entry(
        "an argument was not valid ({issue})", "Check the arguments and call the tool again."
    ),
    "missing_required_argument": Entry(
        "a required argument was missing", "Check the arguments and call the tool again."
    ),
    "invalid_json_body": Entry(
        "the request body was not valid JSON", "This is a bug in purgewarden; report it."
    ),
    "route_not_found": Entry(
        "the API route does not exist at this base URL",
        "Check KATAPULT_API_URL (it should be the API root, e.g. https://api.katapult.io).",
    ),
    "unhandled_exception": Entry(
        "the API failed with an internal error", "Try again later; if it persists, contact Katapult support."
    ),
    "organization_not_found": Entry(
        "no organization matches the id or sub-domain given",
        "Call katapult_list_organizations to find the right one.",
    ),
    "organization_suspended": Entry("the organization is suspended", TELL_USER),
    "organization_not_activated": Entry("the organization is not activated yet", TELL_USER),
    "task_queueing_error": Entry(
        "the background task could not be queued ({details})",
        "Nothing was purged. Try again in a few minutes.",
    ),
    "trash_object_not_found": Entry("no trash object matches", "List the trash again to get current ids."),
    "task_not_found": Entry("no task has that id", "Check the task id returned by the purge."),
    "object_storage_cluster_not_found": Entry(
        "no object storage cluster exists in that region", "Check the region (for example uk-lon-1)."
    ),
    "object_storage_bucket_not_found": Entry(
        "no bucket has that name in that region", "Check the bucket name with the user."
    ),
    "object_storage_account_not_found": Entry("the organization has no object storage account", TELL_USER),
    "object_storage_account_not_provisioned": Entry(
        "the object storage account is not provisioned yet",
        "Wait for provisioning to finish, then try again.",
    ),
    "object_storage_account_suspended": Entry("the object storage account is suspended", TELL_USER),
    "object_in_trash": Entry(
        "the object storage account is in the trash ({trash_object}) and cannot be used",
        "Restore it from the trash first if the user wants this.",
    ),
    "multiple_object_storage_buckets_found": Entry(
        "more than one bucket matched", "Contact Katapult support; the bucket name is ambiguous."
    ),
}

VAULT: Mapping[str, Entry] = {
    "PV1000": Entry("the Vault failed with an internal error", "Try again later; " + PREVIEW_AGAIN.lower()),
    "PV1001": Entry("the access reason is missing", "Call the tool again with a reason."),
    "PV1002": Entry(
        "the access reason is not valid (with reason Other, adhoc_reason is required)",
        "Call the tool again with a valid reason, or reason Other plus adhoc_reason.",
    ),
    "PV1003": Entry("the feature is disabled on this Vault", TELL_USER),
    "PV1004": Entry("the collection was not found", "Call vault_list_collections to see the collections."),
    "PV1005": Entry(
        "the request is unauthorized: the API key is missing or wrong",
        "Ask the user to check PVAULT_API_KEY, then restart the server.",
    ),
    "PV1006": Entry(
        "a Vault policy forbids this operation on some property",
        "Ask the Vault admin for a delete policy on every property of the collection.",
    ),
    "PV1007": Entry(
        "the API key's role lacks a capability needed here (user {username})",
        "Ask the Vault admin to grant the capability (e.g. CapDataDeleter) to that role.",
    ),
    "PV1008": Entry("the collection name is not valid", "Call vault_list_collections to see valid names."),
    "PV1009": Entry(
        "the operation timed out on the Vault server",
        "It is not known whether it finished; " + PREVIEW_AGAIN.lower(),
    ),
    "PV1010": Entry("the Vault cannot reach its database", "Try again later and tell the user."),
    "PV1011": Entry("the user of this API key is disabled", TELL_USER),
    "PV1012": Entry(
        "the request did not match the Vault API: {_message}", "Check the arguments and try again."
    ),
    "PV1013": Entry("the Vault license has expired", TELL_USER),
    "PV1026": Entry(
        "this operation is not allowed while the Vault runs in in-memory mode",
        "It needs a Vault with persistent storage; tell the user.",
    ),
    "PV1033": Entry("the resource is gone", "List again to get the current state."),
    "PV2001": Entry(
        "this Vault version does not implement the operation", "Ask the user to upgrade the Vault."
    ),
    "PV3005": Entry(
        "the object was not found in the requested state (already deleted, or archived rather than active, "
        "or the other way round)",
        "List the objects again to get current ids (a bulk delete that met this deleted nothing).",
    ),
    "PV3009": Entry("the token was not found", "List again to get the current state."),
    "PV3218": Entry(
        "another request was updating the same objects at the same time",
        "Nothing in this batch was deleted. " + PREVIEW_AGAIN,
    ),
}

BY_STATUS: Mapping[int, Entry] = {
    400: Entry("the request was rejected as invalid", "Check the arguments and call the tool again."),
    401: Entry(
        "the credential was rejected", "Ask the user to check the credential, then restart the server."
    ),
    403: Entry(
        "access was denied for this credential", "Ask the user for a credential with the needed rights."
    ),
    404: Entry("the target was not found", "List again to find the right target."),
    405: Entry("the operation is not allowed here", TELL_USER),
    406: Entry("the request cannot be carried out in the current state", PREVIEW_AGAIN),
    409: Entry("a conflicting change was in progress", PREVIEW_AGAIN),
    410: Entry("the resource is gone", "List again to get the current state."),
    413: Entry("the request was too large", "Use smaller batches."),
    414: Entry("the request URL was too long", "Use fewer ids per call."),
    429: Entry("too many requests were sent", "Wait a minute, then try again."),
    500: Entry("the service failed with an internal error", "Try again later."),
    501: Entry("the operation is not implemented by this server", TELL_USER),
    502: Entry("a gateway in front of the service failed", "Try again in a minute."),
    503: Entry("the service is temporarily unavailable", "Wait a minute, then try again."),
    504: Entry("a gateway timed out", "It is not known whether it finished; " + PREVIEW_AGAIN.lower()),
}

CATALOGUE: Mapping[str, Mapping[str, Entry]] = {"katapult": KATAPULT, "vault": VAULT, "cocoon": {}}

# Cocoon Data publishes no error codes, so its statuses get the service-specific words here.
COCOON_BY_STATUS: Mapping[int, Entry] = {
    401: Entry(
        "the access token was rejected (expired, revoked or wrong)",
        "Ask the user for a fresh COCOON_ACCESS_TOKEN, then restart the server.",
    ),
    403: Entry(
        "this user is not an Originator in that organisation",
        "Check the organisation id with the user; only an Originator of it has a recycle bin there.",
    ),
    404: Entry(
        "the organisation or item was not found",
        "Check the organisation id (organisation_id or COCOON_ORGANISATION_ID) with the user.",
    ),
}
SERVICE_BY_STATUS: Mapping[str, Mapping[int, Entry]] = {"cocoon": COCOON_BY_STATUS}


# Failures without an API answer, by kind ("connection" split on whether the request left).
BY_KIND: Mapping[str, Entry] = {
    "timeout": Entry("no answer came in time during {_operation}", UNKNOWN_FATE),
    "connection": Entry("the connection broke during {_operation}", UNKNOWN_FATE),
    "connection_not_sent": Entry(
        "the connection could not be made ({_message})",
        "Nothing was sent. Check the service URL and the network, then try again.",
    ),
    "malformed": Entry(
        "the answer to {_operation} could not be read ({_message})",
        "Check that the service URL points at the API itself. If the call was destructive, it is not known "
        "whether it was carried out: " + PREVIEW_AGAIN.lower(),
    ),
    "invalid_request": Entry(
        "{_message}",
        "Nothing was sent, so nothing changed. Correct the arguments (a valid name, fewer or shorter "
        "values), then call the tool again.",
    ),
}


def entry_for(error: ApiError) -> Entry:
    if error.kind == "connection" and not error.sent:
        return BY_KIND["connection_not_sent"]
    if error.kind != "response":
        return BY_KIND[error.kind]
    known = CATALOGUE.get(error.service, {}).get(error.code or "")
    if known is not None:
        return known
    status = error.status or 500
    by_service = SERVICE_BY_STATUS.get(error.service, {}).get(status)
    if by_service is not None:
        return by_service
    return BY_STATUS.get(status) or BY_STATUS[500 if status >= 500 else 400]


def explain(error: ApiError) -> str:
    """One line for the model: who refused, what happened, the code and status, the next step."""
    entry = entry_for(error)
    what = entry.what.format_map(_Fields(error))
    service = SERVICE_NAMES.get(error.service, error.service)
    if error.kind == "response":
        code = f"{_code(error)}, HTTP {error.status}" if error.code else f"HTTP {error.status}"
        verb = "refused" if (error.status or 500) < 500 else "failed"
        known = error.code in CATALOGUE.get(error.service, {})
        api_said = f" The API said: {quote(error.message)}." if error.message and not known else ""
        text = f"{service} {verb}: {what} ({code}).{api_said}"
    elif error.kind == "malformed":
        text = f"{service} answered, but {what}."
    elif error.kind == "invalid_request":
        text = f"{service} was not called: {what}."
    else:
        text = f"{service} could not be reached: {what}."
    if error.request_id:
        text += f" Request id {quote(error.request_id)}."
    return f"{text} {entry.next}"


def _code(error: ApiError) -> str:
    """A documented code as it is (PV1004, scope_not_granted); any other is API text, and quoted."""
    code = error.code or ""
    return code if code in CATALOGUE.get(error.service, {}) else quote(code)


def _shown(value: Any) -> str:
    """A detail value in words: a number as it is, text quoted, a list or mapping item by item (a few)."""
    if isinstance(value, list):
        items = [_scalar(v) for v in value[:DETAIL_ITEMS]]
    elif isinstance(value, dict):
        items = [f"{quote(k)} {_scalar(v)}" for k, v in list(value.items())[:DETAIL_ITEMS]]
    else:
        return _scalar(value)
    more = f" and {len(value) - DETAIL_ITEMS:,} more" if len(value) > DETAIL_ITEMS else ""
    return ", ".join(items) + more


def _scalar(value: Any) -> str:
    plain_number = isinstance(value, int | float) and not isinstance(value, bool)
    return str(value) if plain_number else quote(value)


class _Fields(dict[str, str]):
    """Fills a template: `{_operation}` and `{_message}` from the error, any other name from its detail.

    A missing field reads as 'unknown', never a KeyError; every value from the API goes through `quote`.
    """

    def __init__(self, error: ApiError) -> None:
        super().__init__(_operation=error.operation, _message=quote(error.message))
        self.detail = error.detail

    def __missing__(self, key: str) -> str:
        value = self.detail.get(key)
        if key == "reason":
            # Katapult's permission_denied explains itself in `details`, when it does at all.
            value = value or self.detail.get("details")
            return f" ({_shown(value)})" if value else ""
        return _shown(value) if value not in (None, "", [], {}) else "unknown"
