"""What the planner, the agent and ``verify`` share about Kubernetes, with no client library: the error
hierarchy (:mod:`.errors`) and the reading of a DynamoGraphDeployment (:mod:`.dgd`). Nothing here imports the
``kubernetes`` package, so the agent can use it without loading the official client (agent/kubeapi.py)."""
