{#
  The relation of a table the sync loads, or an empty relation of the same columns when the table
  is not there: a sync run with --tables, a table added by a later version of the source
  (run_metrics_daily), or batch_outputs, which the demo does not load. Every staging model reads
  through it, so the marts always build, and say "nothing yet" instead of failing.

  The empty relation's columns and types come from the source's .yml (data_type of each column, in
  the neutral names string/bigint/float/boolean/timestamp/date/json), so there is one list of a
  table's columns, the documented one.
#}
{% macro cargo_source(table_name) -%}
    {%- set relation = source('cargo', table_name) -%}
    {%- if not execute or not var('cargo_check_sources', true) -%}
        {{ relation }}
    {%- else -%}
        {%- set existing = adapter.get_relation(
            database=relation.database, schema=relation.schema, identifier=relation.identifier
        ) -%}
        {%- if existing is not none -%}
            {{ existing }}
        {%- else -%}
            {{ log("cargo_elt: source table " ~ relation ~ " does not exist; " ~ model.name ~ " reads it as empty", info=true) }}
            {{ cargo_empty_source(table_name) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{% macro cargo_empty_source(table_name) -%}
    {%- set node = graph.sources.values() | selectattr('source_name', 'equalto', 'cargo')
        | selectattr('name', 'equalto', table_name) | first -%}
    {%- if not node.columns -%}
        {{ exceptions.raise_compiler_error("source cargo." ~ table_name ~ " declares no columns in its .yml") }}
    {%- endif -%}
    (
        select
        {%- for column in node.columns.values() %}
            cast(null as {{ cargo_type(column.data_type or 'string') }}) as {{ column.name }}{{ "," if not loop.last }}
        {%- endfor %}
        from (select 1 as one) as cargo_no_rows
        where 1 = 0
    )
{%- endmacro %}


{% macro cargo_type(neutral) -%}
    {%- set name = neutral | lower -%}
    {%- if name == 'bigint' -%} {{ dbt.type_bigint() }}
    {%- elif name == 'float' -%} {{ cargo_type_double() }}
    {%- elif name == 'boolean' -%} {{ dbt.type_boolean() }}
    {%- elif name == 'timestamp' -%} {{ dbt.type_timestamp() }}
    {%- elif name == 'date' -%} date
    {%- else -%} {{ dbt.type_string() }}
    {%- endif -%}
{%- endmacro %}
