"""The TOTP second factor (RFC 6238, 30 s steps, 6 digits), with replay protection."""

from __future__ import annotations

import re
import time

import pyotp
import segno

from appliance.store import Store
from appliance.system.errors import InvalidInput, NotFound

ISSUER = "Bulwark"
VALID_WINDOW = 1  # accept the previous and next step too (clock drift)
_CODE = re.compile(r"\d{6}")


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str, hostname: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=f"{username}@{hostname}", issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The provisioning URI as an inline SVG QR code (generated here, no external service)."""
    svg: str = segno.make(uri, error="m").svg_inline(scale=4, border=2)
    return svg


def _step_of(secret: str, code: str, now: float) -> int | None:
    totp = pyotp.TOTP(secret)
    current = int(now // totp.interval)
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if pyotp.utils.strings_equal(totp.generate_otp(step), code):
            return step
    return None


def check_code(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step the code belongs to, or None if it is wrong."""
    code = (code or "").replace(" ", "")
    if not _CODE.fullmatch(code):
        return None
    return _step_of(secret, code, time.time() if now is None else now)


def enable(store: Store, user_id: int, secret: str, code: str) -> None:
    """Turn TOTP on for a user after they proved their authenticator produces the right code."""
    step = check_code(secret, code)
    if step is None:
        raise InvalidInput("the code does not match; check the authenticator's clock and try the next code")
    with store.write() as conn:
        cur = conn.execute("UPDATE users SET totp_secret = ?, totp_last_step = ? WHERE id = ?", (secret, step, user_id))
        if cur.rowcount != 1:
            raise NotFound(f"user {user_id}")


def disable(store: Store, user_id: int) -> None:
    with store.write() as conn:
        conn.execute("UPDATE users SET totp_secret = NULL, totp_last_step = NULL WHERE id = ?", (user_id,))


def verify(store: Store, user_id: int, code: str) -> bool:
    """Check a sign-in code; a code is accepted once (a replayed or older step is refused)."""
    with store.write() as conn:
        row = conn.execute("SELECT totp_secret, totp_last_step FROM users WHERE id = ?", (user_id,)).fetchone()
        if row is None or not row["totp_secret"]:
            return False
        step = check_code(row["totp_secret"], code)
        if step is None or (row["totp_last_step"] is not None and step <= row["totp_last_step"]):
            return False
        conn.execute("UPDATE users SET totp_last_step = ? WHERE id = ?", (step, user_id))
        return True


def is_enabled(store: Store, user_id: int) -> bool:
    row = store.query_one("SELECT totp_secret FROM users WHERE id = ?", (user_id,))
    return bool(row and row["totp_secret"])
