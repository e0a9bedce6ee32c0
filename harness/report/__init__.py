"""Run reports: the self-contained report.html, plots and junit.xml."""
