"""Running a search: the step contract, the steps, records, leases, pipeline, jobs, executors."""
