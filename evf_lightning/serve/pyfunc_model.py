"""The code MLflow saves with a registered EVF model and runs to build it (models-from-code; see `pyfunc`)."""

from mlflow.models import set_model

from evf_lightning.serve.pyfunc import EvfPyfuncModel

set_model(EvfPyfuncModel())
