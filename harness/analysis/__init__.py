"""Reading results: the record schema, statistics, summary tables, the gate and the report."""
