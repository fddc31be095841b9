"""Query time: the outfit searcher (decode -> detect -> embed -> attributes -> search -> rank), ranking,
request parsing and response building shared by HTTP and CLI, the settings, and the composition root
(`search.runtime`) that turns settings into models, store and searcher."""
