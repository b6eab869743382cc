"""What the embeddings learn: linear probes (:mod:`pmtrec.analysis.probes`) and 2-D maps
(:mod:`pmtrec.analysis.maps`) of a run's saved embeddings (:mod:`pmtrec.embeddings`)."""
