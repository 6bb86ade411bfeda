"""Throw-away PostgreSQL databases on the local server (trust auth)."""

from __future__ import annotations

import os
import uuid

import psycopg2

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
