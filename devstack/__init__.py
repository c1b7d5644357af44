"""Private, throwaway PostgreSQL, RabbitMQ and MariaDB servers for demos and tests.

Standard library only: it must run before the project's virtualenv exists (``make setup``
uses it to install the Debian packages the Python dependencies build against).
"""
