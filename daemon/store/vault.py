"""The database's encrypted secrets as a whole: the key check at start, and key rotation.

A known value encrypted with the key is stored once; at start it must decrypt, so a wrong key
is refused with a clear message before anything else is read, never half-way through a cycle.
"""

from __future__ import annotations

from daemon.encryption import SecretBox, SecretKeyError
from daemon.store import meta
from daemon.store.database import Database

KEY_CHECK_PLAINTEXT = "mls-sync key check v1"
SECRET_COLUMNS = (
    ("mls_connections", "secret_encrypted"),
    ("platform_accounts", "access_token_encrypted"),
    ("platform_accounts", "refresh_token_encrypted"),
    ("platform_accounts", "client_secret_encrypted"),
)
NO_KEY = (
    "the database holds encrypted credentials but no secret key is configured: set "
    "MLS_SYNC_SECRET_KEY or provide $CREDENTIALS_DIRECTORY/secret-key (the key the database "
    "was written with)"
)


async def unlock(db: Database, keys_text: str | None) -> SecretBox | None:
    """Returns the box for this database, or None when there is no key and nothing to read.
    Raises SecretKeyError when the key is missing, malformed or not the database's."""
    check = await meta.get(db, meta.KEY_CHECK)
    if keys_text is None:
        if check is not None:
            raise SecretKeyError(NO_KEY)
        return None
    box = SecretBox(keys_text)
    if check is None:
        async with db.transaction() as conn:
            await meta.put(conn, meta.KEY_CHECK, box.encrypt(KEY_CHECK_PLAINTEXT))
    elif box.decrypt(check) != KEY_CHECK_PLAINTEXT:
        raise SecretKeyError("the key check decrypted to something unexpected")
    return box


async def rotate(db: Database, box: SecretBox) -> int:
    """Re-encrypts every stored secret with the first key, in one transaction."""
    count = 0
    async with db.transaction() as conn:
        for table, column in SECRET_COLUMNS:
            rows = await conn.fetch_all(
                f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL"
            )
            await conn.execute_many(
                f"UPDATE {table} SET {column} = ? WHERE id = ?",
                [(box.rotate(r[1]), r[0]) for r in rows],
            )
            count += len(rows)
        await meta.put(conn, meta.KEY_CHECK, box.encrypt(KEY_CHECK_PLAINTEXT))
    return count
