"""Pinned versions and Maven coordinates of the local services: the one place to change them.

docker-compose.yml pins the same Elasticsearch and Redis majors; a test checks they agree.
"""

from __future__ import annotations

__all__ = [
    "OPENSEARCH_VERSION",
    "OPENSEARCH_KNN_VERSION",
    "ELASTICSEARCH_VERSION",
    "REDIS_MAJOR",
    "OPENSEARCH_DISTRIBUTION",
    "OPENSEARCH_PARENT_JOIN",
    "OPENSEARCH_PAINLESS",
    "OPENSEARCH_KNN",
    "ELASTICSEARCH_DISTRIBUTION",
]

# The k-NN plugin on Maven Central is published for 2.19.1 only in the 2.19 line, and a
# plugin must match the server version exactly, so the server is pinned to 2.19.1 too.
OPENSEARCH_VERSION = "2.19.1"
OPENSEARCH_KNN_VERSION = "2.19.1.0"
ELASTICSEARCH_VERSION = "8.15.5"
REDIS_MAJOR = 7

OPENSEARCH_DISTRIBUTION = f"org.opensearch.distribution.integ-test-zip:opensearch:{OPENSEARCH_VERSION}:zip"
OPENSEARCH_PARENT_JOIN = f"org.opensearch.plugin:parent-join-client:{OPENSEARCH_VERSION}"
# lang-painless with its runtime dependencies (resolved transitively by Maven); the k-NN
# plugin declares extended.plugins=lang-painless and refuses to load without it.
OPENSEARCH_PAINLESS = f"org.opensearch.plugin:lang-painless:{OPENSEARCH_VERSION}"
OPENSEARCH_PAINLESS_DEPENDENCIES = (
    "org.antlr:antlr4-runtime:4.13.1",
    "org.ow2.asm:asm:9.7",
    "org.ow2.asm:asm-util:9.7",
    "org.ow2.asm:asm-tree:9.7",
    "org.ow2.asm:asm-commons:9.7",
    "org.ow2.asm:asm-analysis:9.7",
    f"org.opensearch.plugin:opensearch-scripting-painless-spi:{OPENSEARCH_VERSION}",
)
OPENSEARCH_KNN = f"org.opensearch.plugin:opensearch-knn:{OPENSEARCH_KNN_VERSION}:zip"
ELASTICSEARCH_DISTRIBUTION = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ELASTICSEARCH_VERSION}:zip"
