"""A statement's parameters spelt for psycopg, and nothing else in it touched."""

from __future__ import annotations

from daemon.store.dialect import Sql, for_psycopg, postgresql_text, sqlite_text


def test_named_and_positional_parameters_are_spelt_for_psycopg() -> None:
    assert for_psycopg("SELECT a FROM t WHERE id = :id AND n > :n_2") == (
        "SELECT a FROM t WHERE id = %(id)s AND n > %(n_2)s"
    )
    assert for_psycopg("UPDATE t SET a = ? WHERE id = ?") == "UPDATE t SET a = %s WHERE id = %s"


def test_a_colon_or_question_mark_inside_a_literal_a_name_or_a_comment_is_not_a_parameter() -> None:
    sql = """SELECT 'at 10:30?', "odd:name?" FROM t -- is :this one?
WHERE a = :a"""
    assert (
        for_psycopg(sql)
        == """SELECT 'at 10:30?', "odd:name?" FROM t -- is :this one?
WHERE a = %(a)s"""
    )


def test_a_quote_doubled_inside_a_literal_does_not_end_it() -> None:
    assert for_psycopg("SELECT 'it''s :not' || :yes") == "SELECT 'it''s :not' || %(yes)s"


def test_casts_stay_casts() -> None:
    assert for_psycopg("SELECT :ids::json, x::text") == "SELECT %(ids)s::json, x::text"


def test_every_percent_sign_is_doubled_literals_included() -> None:
    # psycopg reads % as a placeholder anywhere in the text, even inside a literal.
    assert for_psycopg("SELECT a % 2, 'x%' FROM t WHERE b LIKE :p") == (
        "SELECT a %% 2, 'x%%' FROM t WHERE b LIKE %(p)s"
    )


def test_a_statement_with_two_texts_runs_each_on_its_own_database() -> None:
    sql = Sql(
        sqlite="SELECT value FROM json_each(:ids)",
        postgresql="SELECT json_array_elements_text(:ids::json)",
    )
    assert sqlite_text(sql) == "SELECT value FROM json_each(:ids)"
    assert postgresql_text(sql) == "SELECT json_array_elements_text(%(ids)s::json)"
    assert sqlite_text("SELECT :a") == "SELECT :a"
    assert postgresql_text("SELECT :a") == "SELECT %(a)s"
