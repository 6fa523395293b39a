"""Runs and jobs: the one owner of the run-directory format (typed schema, RunDir, store, lock), launching and supervising jobs, pre-flight, system samples."""
