from services import run

run("dads broker", "services.broker.service")
