{#
  Time arithmetic that must mean the same on DuckDB, BigQuery and Snowflake.

  cargo_utc_day: the UTC calendar day of a timestamp. dbt.date_trunc('day') truncates in the
  session's time zone on DuckDB (TIMESTAMPTZ) and in the value's own offset on Snowflake
  (TIMESTAMP_TZ); the sync loads UTC, and a day of the marts is a UTC day whatever the session says.

  cargo_seconds_between: seconds from one timestamp to another, at the milliseconds Cargo stores
  (dbt.datediff counts millisecond boundaries crossed, exact for millisecond values).
#}
{% macro cargo_utc_day(column) -%}
    {{ return(adapter.dispatch('cargo_utc_day', 'cargo_elt')(column)) }}
{%- endmacro %}

{% macro default__cargo_utc_day(column) -%}
    cast({{ dbt.date_trunc('day', column) }} as date)
{%- endmacro %}

{% macro duckdb__cargo_utc_day(column) -%}
    cast(timezone('UTC', {{ column }}) as date)
{%- endmacro %}

{% macro snowflake__cargo_utc_day(column) -%}
    to_date(convert_timezone('UTC', {{ column }}))
{%- endmacro %}

{% macro bigquery__cargo_utc_day(column) -%}
    date({{ column }}, 'UTC')
{%- endmacro %}


{% macro cargo_seconds_between(start, finish) -%}
    ({{ dbt.datediff(start, finish, 'millisecond') }} / 1000.0)
{%- endmacro %}
