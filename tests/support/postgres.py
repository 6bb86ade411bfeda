"""Throw-away PostgreSQL databases on the local server (trust auth)."""

from __future__ import annotations

import os
import uuid

import psycopg2
from sqlalchemy.engine import make_url

PG_HOST = os.environ.get("UBA_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("UBA_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("UBA_TEST_PG_USER", "postgres")


def _admin():
    conn = psycopg2.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5
    )
    conn.autocommit = True
    return conn


def available() -> str:
    """'' when the server answers, else why not."""
    try:
        _admin().close()
    except psycopg2.Error as exc:
        return str(exc).strip()
    return ""


def create_database() -> str:
    name = "uba_test_" + uuid.uuid4().hex[:12]
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


def query(database_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of `sql` on a database made by create_database (a connection of
    its own: a test reads what the server processes committed)."""
    url = make_url(database_url)
    conn = psycopg2.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, connect_timeout=5
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def stored_ids(database_url: str, prefix: str) -> list[str]:
    """The event ids stored that start with `prefix`."""
    rows = query(
        database_url, "SELECT event_id FROM events WHERE event_id LIKE %s", (prefix + "%",)
    )
    return [row[0] for row in rows]
