{#
  cargo_ratio: numerator / denominator as a float, null when the denominator is 0 or null (a day
  with no finished run has no error rate, not a rate of 0).

  cargo_percentile_over: the exact p-th percentile (linear interpolation between the two nearest
  values, as Excel's PERCENTILE.INC and ClickHouse's quantileExactInclusive) of expression within a
  window partition. A window, not an aggregate: BigQuery has exact percentiles only as the analytic
  PERCENTILE_CONT, so the marts compute it over a partition and keep one row per partition; DuckDB
  and Snowflake take the same window form.
#}
{% macro cargo_ratio(numerator, denominator) -%}
    case
        when {{ denominator }} is null or {{ denominator }} = 0 then null
        else cast({{ numerator }} as {{ cargo_type_double() }}) / {{ denominator }}
    end
{%- endmacro %}


{# A 64-bit float: dbt.type_float() is FLOAT on DuckDB, which is 32-bit there (a rate of 1/12 would
   read 0.0833333358). Snowflake's FLOAT and BigQuery's FLOAT64 are 64-bit already. #}
{% macro cargo_type_double() -%}
    {{ return(adapter.dispatch('cargo_type_double', 'cargo_elt')()) }}
{%- endmacro %}

{% macro default__cargo_type_double() -%}
    {{ dbt.type_float() }}
{%- endmacro %}

{% macro duckdb__cargo_type_double() -%}
    double
{%- endmacro %}


{% macro cargo_percentile_over(expression, fraction, partition_by) -%}
    {{ return(adapter.dispatch('cargo_percentile_over', 'cargo_elt')(expression, fraction, partition_by)) }}
{%- endmacro %}

{% macro default__cargo_percentile_over(expression, fraction, partition_by) -%}
    percentile_cont({{ fraction }}) within group (order by {{ expression }}) over (partition by {{ partition_by }})
{%- endmacro %}

{% macro duckdb__cargo_percentile_over(expression, fraction, partition_by) -%}
    quantile_cont({{ expression }}, {{ fraction }}) over (partition by {{ partition_by }})
{%- endmacro %}

{% macro bigquery__cargo_percentile_over(expression, fraction, partition_by) -%}
    percentile_cont({{ expression }}, {{ fraction }}) over (partition by {{ partition_by }})
{%- endmacro %}
