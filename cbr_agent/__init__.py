"""cbr-agent: a file-backup agent for hosts, for the Cloud Backup and Recovery (CBR) service."""

__version__ = "0.1.0"
