"""The exported model and the ``classify`` command that applies it to new scans."""
