"""The CBR agents API itself: the SQLite store, the embedded (in-process) control plane and the HTTP
server, with the request validation and error codes they share."""
