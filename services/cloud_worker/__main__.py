from services import run

run("dads cloud-worker", "services.cloud_worker.service")
