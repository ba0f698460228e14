"""issue-summarizer: short, accurate titles for GitHub issues."""

__version__ = "0.1.0"
