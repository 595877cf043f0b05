"""AWS Lambda entry point: API Gateway events through Mangum into the FastAPI app.

Lifespan is off because Mangum would run it on every invocation; the Triton client is built lazily
and lives as long as the Lambda's process."""

from mangum import Mangum

from service.app import app

handler = Mangum(app, lifespan="off")
