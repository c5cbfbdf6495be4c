"""Active health checks: one checker process per gateway, its verdicts in shared memory for every worker."""
