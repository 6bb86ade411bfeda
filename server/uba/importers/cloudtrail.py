"""AWS CloudTrail records: the {"Records": [...]} files a trail writes to
S3 (pretty-printed or on one line), or JSON Lines (one record a line, as
CloudTrail Lake and most forwarders export them). Field mapping:
docs/importers.md.

  ConsoleLogin, responseElements.ConsoleLogin Success   LOGIN_SUCCESS
  ConsoleLogin, responseElements.ConsoleLogin Failure   LOGIN_FAILURE
  CheckMfa, responseElements.CheckMfa Success/Failure   MFA_APPROVED / MFA_DENIED
  any other AwsApiCall                                  API_CALL, endpoint
                                                        "eventSource/eventName"
  AwsServiceEvent, AwsCloudTrailInsight, ...            ignored

The user id must name the same person across records, so it is picked by
userIdentity.type:

  IAMUser                 userName
  Root                    "root@" + accountId (each account has its own root)
  AssumedRole             the role session name when it is an e-mail address
                          (IAM Identity Center and federated sign-ins set it to
                          the person's), else "ROLE/SESSION" from the ARN
  FederatedUser           the part of principalId after ':' (the federated name)
  IdentityCenterUser      onBehalfOf.userId
  AWSService, AWSAccount  skipped: no person of this account made the call

A failed console sign-in of a user name that does not exist names
HIDDEN_DUE_TO_SECURITY_REASONS: skipped and counted. API errors become an
HTTP-like status (AccessDenied / UnauthorizedOperation 403, throttling
429, others 400, none 200), so uba's error-rate features see them.
Temporary credentials (access keys starting ASIA) are the session. The
event id hashes eventID.
"""

from __future__ import annotations

from collections.abc import Iterable

from uba.importers.jsondoc import Ignore, JsonImporter, Skip, dig, text, user_key
from uba.v1 import events_pb2

_DENIED = ("AccessDenied", "UnauthorizedOperation", "Client.UnauthorizedOperation")


def user_of(identity: dict) -> str:
    """The stable user id of a userIdentity element (see module docstring)."""
    kind = text(identity.get("type"))
    if kind == "IAMUser":
        return text(identity.get("userName"))
    if kind == "Root":
        return f"root@{text(identity.get('accountId'))}"
    if kind == "AssumedRole":
        arn = text(identity.get("arn"))
        parts = arn.split(":", 5)[-1].split("/") if arn else []
        if len(parts) >= 3:
            role, session = parts[1], parts[-1]
            return user_key(session) if "@" in session else f"{role}/{session}"
        issuer = text(dig(identity, "sessionContext.sessionIssuer.userName"))
        return issuer
    if kind == "FederatedUser":
        principal = text(identity.get("principalId"))
        return principal.split(":", 1)[-1] if principal else ""
    if kind == "IdentityCenterUser":
        return text(dig(identity, "onBehalfOf.userId"))
    raise Skip(f"userIdentity.type {kind or 'missing'} is no person")


class CloudTrailImporter(JsonImporter):
    prefix = "cloudtrail"
    default_source = "cloudtrail"

    def convert(self, record: dict) -> Iterable[events_pb2.ActivityEvent]:
        name = text(record.get("eventName"))
        event_type = text(record.get("eventType"))
        if not name or event_type not in ("", "AwsApiCall", "AwsConsoleSignIn"):
            raise Ignore
        identity = record.get("userIdentity") or {}
        user = user_of(identity)
        if "HIDDEN_DUE_TO_SECURITY_REASONS" in user:
            raise Skip("sign-in of a user name that does not exist (name hidden by AWS)")
        response = record.get("responseElements") or {}
        error = text(record.get("errorCode"))
        fields: dict = {
            "source_ip": text(record.get("sourceIPAddress")),
            "user_agent": text(record.get("userAgent")),
        }
        key = text(identity.get("accessKeyId"))
        if key.startswith("ASIA"):
            fields["session_id"] = key
        attributes = {
            "account": text(identity.get("accountId") or record.get("recipientAccountId")),
            "identity_type": text(identity.get("type")),
            "region": text(record.get("awsRegion")),
            "error_code": error,
            "reason": text(record.get("errorMessage")),
            "mfa": text(dig(identity, "sessionContext.attributes.mfaAuthenticated")),
        }
        if name == "ConsoleLogin":
            result = text(response.get("ConsoleLogin"))
            kind = {"Success": "login_success", "Failure": "login_failure"}.get(result)
            if kind is None:
                raise Skip(f"ConsoleLogin result {result or 'missing'}")
            used = text(dig(record, "additionalEventData.MFAUsed"))
            attributes["mfa"] = {"Yes": "true", "No": "false"}.get(used, attributes["mfa"])
        elif name == "CheckMfa":
            result = text(response.get("CheckMfa"))
            kind = {"Success": "mfa_approved", "Failure": "mfa_denied"}.get(result)
            if kind is None:
                raise Skip(f"CheckMfa result {result or 'missing'}")
        else:
            kind = "api_call"
            fields["api_path"] = f"{text(record.get('eventSource'))}/{name}"
            fields["status_code"] = (
                403 if error in _DENIED else 429 if "Throttl" in error else 400 if error else 200
            )
            attributes["read_only"] = (
                str(record["readOnly"]).lower() if "readOnly" in record else ""
            )
        at = record.get("eventTime")
        if not at:
            raise ValueError("eventTime: missing")
        return [
            self.event(
                record, user, kind, at, uid=record.get("eventID"), attributes=attributes, **fields
            )
        ]
