"""Development tooling, not part of the recommender: installs and runs the local Redis,
OpenSearch and Elasticsearch that tests and the demo use (`hotfeed services up|down|status`).

Production runs the services of docker-compose.yml (or managed ones) instead; nothing in
`recommender/`, `indexer/`, `clustering/` or `api/` imports this package.
"""
