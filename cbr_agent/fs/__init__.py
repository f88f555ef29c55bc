"""The local file system as backup and restore see it: nodes from lstat, paths longer than PATH_MAX."""
