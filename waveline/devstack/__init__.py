"""The local stack behind ``make up`` / ``waveline dev``: real Kafka (KRaft, from the Apache
jars on Maven Central), real PostgreSQL (initdb under ``.run/``), and the five services."""
