"""Session recordings: the SQLite store, the recorder and its writer thread, exports and reports.

They sit below the service: the daemon records through them, and the clinic reads, exports and
reports recordings with the daemon stopped.
"""
