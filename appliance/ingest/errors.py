"""Errors an agent can meet at /agent/v1 (each with what to do next)."""

from __future__ import annotations

from appliance.system.errors import Conflict, InvalidInput, NotFound, OutOfSpace, PermissionDenied


class AgentUnauthorized(PermissionDenied):
    """The agent credential is {}."""

    code = "agent_unauthorized"
    http_status = 401
    hint = "Create an enrollment code with 'bulwark client enroll-code CLIENT' and run 'bulwark-agent enroll' again."


class EnrollCodeInvalid(PermissionDenied):
    """The enrollment code is {}."""

    code = "enroll_code_invalid"
    http_status = 401
    hint = "Create a new code with 'bulwark client enroll-code CLIENT' (codes are single use and last 24 hours)."


class ProtocolError(InvalidInput):
    """Protocol error: {}."""

    code = "protocol_error"
    hint = "Update the agent to a version that speaks this appliance's protocol; nothing was stored."


class ContentMismatch(InvalidInput):
    """The content sent for {} does not match: {}."""

    code = "content_mismatch"
    hint = "The file changed while it was read or the data was damaged in transit; run the backup again."


class MissingContent(Conflict):
    """{} content blob(s) of the manifest have not arrived yet."""

    code = "missing_content"
    hint = "Send the listed content and commit again."


class JobNotOpen(Conflict):
    """Backup job {} is {}."""

    code = "job_not_open"
    hint = "Start a new backup; what already arrived is kept and not sent again."


class JobNotFound(NotFound):
    """No backup job {} for this client."""

    code = "job_not_found"
    hint = "Start a new backup with 'bulwark-agent backup'."


class CredentialNotFound(NotFound):
    """No agent credential {}."""

    code = "agent_not_found"
    hint = "List the agents with 'bulwark client agents CLIENT'."


class ImageIncomplete(Conflict):
    """Image {} does not hold what the agent read yet: {}."""

    code = "image_incomplete"
    hint = "Fetch the block map again, send the blocks that differ and commit again."


class ImageNotFound(NotFound):
    """No image {} for this client."""

    code = "image_not_found"
    hint = "List the client's images with 'bulwark-agent status'; make one with 'bulwark-agent image-backup'."


class ClientOutOfSpace(OutOfSpace):
    """No space left on the appliance for client {} ({})."""

    code = "agent_out_of_space"
    hint = (
        "Raise the client's quota ('bulwark client set CLIENT --quota SIZE') or free space on the pool, then run "
        "the backup again; what already arrived is kept and no recovery point was changed."
    )
