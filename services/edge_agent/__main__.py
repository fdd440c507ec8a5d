from services import run

run("dads edge-agent", "services.edge_agent.service")
