"""The Runs page: the run history as a comparison table and a dashboard of the selected runs' curves.
RunsPage lives in page.py, the table in comparison.py, the dashboard in dashboard.py."""

from app.pages.runs.page import RunsPage

__all__ = ["RunsPage"]
