"""Logic tested on its own: no server, no child process."""
