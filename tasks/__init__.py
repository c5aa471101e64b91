"""One module per pipeline stage: a plain function, and a thin Prefect ``@task`` around it."""
