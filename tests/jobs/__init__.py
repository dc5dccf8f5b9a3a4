"""Tests of the job system (service.jobs)."""
