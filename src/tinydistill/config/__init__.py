"""The run's configuration: the typed schema (:mod:`.schema`), teacher specs (:mod:`.teachers`), reading
YAML with dotted overrides (:mod:`.loader`) and the precision a config resolves to here (:mod:`.precision`)."""

from .loader import apply_overrides, config_from_dict, dump_config, load_config, read_yaml, yaml_key_lines
from .paths import check_paths, looks_local
from .precision import autocast_dtype, cpu_has_native_bf16, effective_precision, precision_label
from .schema import (
    BEST_DIR,
    MINILM_ALIAS,
    ColumnsConfig,
    DataConfig,
    DataSourceConfig,
    EvalConfig,
    LayerPair,
    LoraConfig,
    RunConfig,
    StudentConfig,
    TrainConfig,
    WhiteboxConfig,
    stage_configs,
)
from .teachers import (
    GenerationSpec,
    HFTeacherSpec,
    HTTPTeacherSpec,
    ICLSpec,
    ImportedTeacherSpec,
    QualitySpec,
    TeacherSpec,
    looks_like_key,
)

__all__ = ["BEST_DIR", "ColumnsConfig", "DataConfig", "DataSourceConfig", "EvalConfig", "GenerationSpec",
           "HFTeacherSpec", "HTTPTeacherSpec", "ICLSpec", "ImportedTeacherSpec", "LayerPair", "LoraConfig",
           "MINILM_ALIAS", "QualitySpec", "RunConfig", "StudentConfig", "TeacherSpec", "TrainConfig",
           "WhiteboxConfig", "apply_overrides", "autocast_dtype", "check_paths", "config_from_dict",
           "cpu_has_native_bf16", "dump_config", "effective_precision", "load_config", "looks_like_key",
           "looks_local", "precision_label", "read_yaml", "stage_configs", "yaml_key_lines"]
