from services import run

run("dads planner", "services.planner.service")
