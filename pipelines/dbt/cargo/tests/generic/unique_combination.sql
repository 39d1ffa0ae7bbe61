{#
  No two rows share the values of these columns (a compound key). dbt_utils has the same test; this
  project installs no dbt packages (`dbt deps` would need the network at run time).
#}
{% test cargo_unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as duplicates
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
