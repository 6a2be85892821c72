from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ContentEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTENT_ENCODING_UNSPECIFIED: _ClassVar[ContentEncoding]
    CONTENT_ENCODING_IDENTITY: _ClassVar[ContentEncoding]
    CONTENT_ENCODING_ZSTD: _ClassVar[ContentEncoding]

class SeedLifecycleStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEED_STAGE_UNKNOWN: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_DORMANT: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_GERMINATED: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_TRAINING: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_BLENDING: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_SHADOWING: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_PROBATIONARY: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_FOSSILIZED: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_CULLED: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_EMBARGOED: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_RESETTING: _ClassVar[SeedLifecycleStage]
    SEED_STAGE_TERMINATED: _ClassVar[SeedLifecycleStage]

class SeedOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEED_OP_UNSPECIFIED: _ClassVar[SeedOp]
    SEED_OP_WAIT: _ClassVar[SeedOp]
    SEED_OP_GERMINATE: _ClassVar[SeedOp]
    SEED_OP_ADVANCE: _ClassVar[SeedOp]
    SEED_OP_CULL: _ClassVar[SeedOp]

class HealthStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_UNKNOWN: _ClassVar[HealthStatus]
    HEALTH_OK: _ClassVar[HealthStatus]
    HEALTH_DEGRADED: _ClassVar[HealthStatus]
    HEALTH_UNHEALTHY: _ClassVar[HealthStatus]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_DEBUG: _ClassVar[Severity]
    SEVERITY_INFO: _ClassVar[Severity]
    SEVERITY_WARNING: _ClassVar[Severity]
    SEVERITY_ERROR: _ClassVar[Severity]
CONTENT_ENCODING_UNSPECIFIED: ContentEncoding
CONTENT_ENCODING_IDENTITY: ContentEncoding
CONTENT_ENCODING_ZSTD: ContentEncoding
SEED_STAGE_UNKNOWN: SeedLifecycleStage
SEED_STAGE_DORMANT: SeedLifecycleStage
SEED_STAGE_GERMINATED: SeedLifecycleStage
SEED_STAGE_TRAINING: SeedLifecycleStage
SEED_STAGE_BLENDING: SeedLifecycleStage
SEED_STAGE_SHADOWING: SeedLifecycleStage
SEED_STAGE_PROBATIONARY: SeedLifecycleStage
SEED_STAGE_FOSSILIZED: SeedLifecycleStage
SEED_STAGE_CULLED: SeedLifecycleStage
SEED_STAGE_EMBARGOED: SeedLifecycleStage
SEED_STAGE_RESETTING: SeedLifecycleStage
SEED_STAGE_TERMINATED: SeedLifecycleStage
SEED_OP_UNSPECIFIED: SeedOp
SEED_OP_WAIT: SeedOp
SEED_OP_GERMINATE: SeedOp
SEED_OP_ADVANCE: SeedOp
SEED_OP_CULL: SeedOp
HEALTH_UNKNOWN: HealthStatus
HEALTH_OK: HealthStatus
HEALTH_DEGRADED: HealthStatus
HEALTH_UNHEALTHY: HealthStatus
SEVERITY_UNSPECIFIED: Severity
SEVERITY_DEBUG: Severity
SEVERITY_INFO: Severity
SEVERITY_WARNING: Severity
SEVERITY_ERROR: Severity

class EventEnvelope(_message.Message):
    __slots__ = ("event_id", "payload_type", "schema_version", "source", "created_at_ns", "producer_id", "sequence", "content_encoding", "uncompressed_size", "payload", "correlation_id")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_TYPE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_ENCODING_FIELD_NUMBER: _ClassVar[int]
    UNCOMPRESSED_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    payload_type: str
    schema_version: int
    source: str
    created_at_ns: int
    producer_id: str
    sequence: int
    content_encoding: ContentEncoding
    uncompressed_size: int
    payload: bytes
    correlation_id: str
    def __init__(self, event_id: _Optional[str] = ..., payload_type: _Optional[str] = ..., schema_version: _Optional[int] = ..., source: _Optional[str] = ..., created_at_ns: _Optional[int] = ..., producer_id: _Optional[str] = ..., sequence: _Optional[int] = ..., content_encoding: _Optional[_Union[ContentEncoding, str]] = ..., uncompressed_size: _Optional[int] = ..., payload: _Optional[bytes] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class HardwareContext(_message.Message):
    __slots__ = ("device_type", "total_memory_gb", "available_memory_gb", "device_count")
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MEMORY_GB_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MEMORY_GB_FIELD_NUMBER: _ClassVar[int]
    DEVICE_COUNT_FIELD_NUMBER: _ClassVar[int]
    device_type: str
    total_memory_gb: float
    available_memory_gb: float
    device_count: int
    def __init__(self, device_type: _Optional[str] = ..., total_memory_gb: _Optional[float] = ..., available_memory_gb: _Optional[float] = ..., device_count: _Optional[int] = ...) -> None: ...

class SeedState(_message.Message):
    __slots__ = ("slot_index", "stage", "blueprint_id", "alpha", "epochs_in_stage", "gradient_norm", "parameter_count", "accuracy_delta")
    SLOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_IN_STAGE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_NORM_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_DELTA_FIELD_NUMBER: _ClassVar[int]
    slot_index: int
    stage: SeedLifecycleStage
    blueprint_id: str
    alpha: float
    epochs_in_stage: int
    gradient_norm: float
    parameter_count: int
    accuracy_delta: float
    def __init__(self, slot_index: _Optional[int] = ..., stage: _Optional[_Union[SeedLifecycleStage, str]] = ..., blueprint_id: _Optional[str] = ..., alpha: _Optional[float] = ..., epochs_in_stage: _Optional[int] = ..., gradient_norm: _Optional[float] = ..., parameter_count: _Optional[int] = ..., accuracy_delta: _Optional[float] = ...) -> None: ...

class SystemStatePacket(_message.Message):
    __slots__ = ("version", "current_epoch", "validation_accuracy", "validation_loss", "training_metrics", "hardware_context", "seed_states", "timestamp_ns", "training_run_id", "train_loss", "host_parameter_count", "graph", "action_mask")
    class TrainingMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_EPOCH_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_METRICS_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SEED_STATES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    HOST_PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    ACTION_MASK_FIELD_NUMBER: _ClassVar[int]
    version: int
    current_epoch: int
    validation_accuracy: float
    validation_loss: float
    training_metrics: _containers.ScalarMap[str, float]
    hardware_context: HardwareContext
    seed_states: _containers.RepeatedCompositeFieldContainer[SeedState]
    timestamp_ns: int
    training_run_id: str
    train_loss: float
    host_parameter_count: int
    graph: GraphState
    action_mask: bytes
    def __init__(self, version: _Optional[int] = ..., current_epoch: _Optional[int] = ..., validation_accuracy: _Optional[float] = ..., validation_loss: _Optional[float] = ..., training_metrics: _Optional[_Mapping[str, float]] = ..., hardware_context: _Optional[_Union[HardwareContext, _Mapping]] = ..., seed_states: _Optional[_Iterable[_Union[SeedState, _Mapping]]] = ..., timestamp_ns: _Optional[int] = ..., training_run_id: _Optional[str] = ..., train_loss: _Optional[float] = ..., host_parameter_count: _Optional[int] = ..., graph: _Optional[_Union[GraphState, _Mapping]] = ..., action_mask: _Optional[bytes] = ...) -> None: ...

class SeedOperation(_message.Message):
    __slots__ = ("op", "slot_index", "blueprint_id")
    OP_FIELD_NUMBER: _ClassVar[int]
    SLOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    BLUEPRINT_ID_FIELD_NUMBER: _ClassVar[int]
    op: SeedOp
    slot_index: int
    blueprint_id: str
    def __init__(self, op: _Optional[_Union[SeedOp, str]] = ..., slot_index: _Optional[int] = ..., blueprint_id: _Optional[str] = ...) -> None: ...

class OptimizerAdjustment(_message.Message):
    __slots__ = ("lr_multiplier",)
    LR_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    lr_multiplier: float
    def __init__(self, lr_multiplier: _Optional[float] = ...) -> None: ...

class CircuitBreakerCommand(_message.Message):
    __slots__ = ("open", "duration_s")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    open: bool
    duration_s: int
    def __init__(self, open: _Optional[bool] = ..., duration_s: _Optional[int] = ...) -> None: ...

class AdaptationCommand(_message.Message):
    __slots__ = ("command_id", "training_run_id", "policy_version", "issued_at_ns", "log_prob", "reason", "epoch", "seed_operation", "optimizer_adjustment", "circuit_breaker")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    TRAINING_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    LOG_PROB_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEED_OPERATION_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_ADJUSTMENT_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_BREAKER_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    training_run_id: str
    policy_version: int
    issued_at_ns: int
    log_prob: float
    reason: str
    epoch: int
    seed_operation: SeedOperation
    optimizer_adjustment: OptimizerAdjustment
    circuit_breaker: CircuitBreakerCommand
    def __init__(self, command_id: _Optional[str] = ..., training_run_id: _Optional[str] = ..., policy_version: _Optional[int] = ..., issued_at_ns: _Optional[int] = ..., log_prob: _Optional[float] = ..., reason: _Optional[str] = ..., epoch: _Optional[int] = ..., seed_operation: _Optional[_Union[SeedOperation, _Mapping]] = ..., optimizer_adjustment: _Optional[_Union[OptimizerAdjustment, _Mapping]] = ..., circuit_breaker: _Optional[_Union[CircuitBreakerCommand, _Mapping]] = ...) -> None: ...

class MetricPoint(_message.Message):
    __slots__ = ("name", "value", "labels", "timestamp_ns")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    labels: _containers.ScalarMap[str, str]
    timestamp_ns: int
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., labels: _Optional[_Mapping[str, str]] = ..., timestamp_ns: _Optional[int] = ...) -> None: ...

class TelemetryEvent(_message.Message):
    __slots__ = ("name", "message", "severity", "attributes", "timestamp_ns")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    name: str
    message: str
    severity: Severity
    attributes: _containers.ScalarMap[str, str]
    timestamp_ns: int
    def __init__(self, name: _Optional[str] = ..., message: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., timestamp_ns: _Optional[int] = ...) -> None: ...

class TelemetryPacket(_message.Message):
    __slots__ = ("source", "timestamp_ns", "metrics", "events", "health", "run_id")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    source: str
    timestamp_ns: int
    metrics: _containers.RepeatedCompositeFieldContainer[MetricPoint]
    events: _containers.RepeatedCompositeFieldContainer[TelemetryEvent]
    health: HealthStatus
    run_id: str
    def __init__(self, source: _Optional[str] = ..., timestamp_ns: _Optional[int] = ..., metrics: _Optional[_Iterable[_Union[MetricPoint, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[TelemetryEvent, _Mapping]]] = ..., health: _Optional[_Union[HealthStatus, str]] = ..., run_id: _Optional[str] = ...) -> None: ...

class NodeBlock(_message.Message):
    __slots__ = ("node_type", "num_features", "features", "counts")
    NODE_TYPE_FIELD_NUMBER: _ClassVar[int]
    NUM_FEATURES_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    node_type: str
    num_features: int
    features: bytes
    counts: bytes
    def __init__(self, node_type: _Optional[str] = ..., num_features: _Optional[int] = ..., features: _Optional[bytes] = ..., counts: _Optional[bytes] = ...) -> None: ...

class EdgeBlock(_message.Message):
    __slots__ = ("src_type", "relation", "dst_type", "index", "counts")
    SRC_TYPE_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    DST_TYPE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    src_type: str
    relation: str
    dst_type: str
    index: bytes
    counts: bytes
    def __init__(self, src_type: _Optional[str] = ..., relation: _Optional[str] = ..., dst_type: _Optional[str] = ..., index: _Optional[bytes] = ..., counts: _Optional[bytes] = ...) -> None: ...

class GraphState(_message.Message):
    __slots__ = ("schema_name", "num_graphs", "nodes", "edges")
    SCHEMA_NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_GRAPHS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    schema_name: str
    num_graphs: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeBlock]
    edges: _containers.RepeatedCompositeFieldContainer[EdgeBlock]
    def __init__(self, schema_name: _Optional[str] = ..., num_graphs: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeBlock, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[EdgeBlock, _Mapping]]] = ...) -> None: ...

class Trajectory(_message.Message):
    __slots__ = ("actor_id", "sequence", "env_id", "schema_name", "length", "num_heads", "joint_action_count", "graphs", "actions", "action_masks", "behaviour_log_probs", "rewards", "terminated", "truncated", "final_graphs", "policy_versions", "episode_returns")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_NAME_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    NUM_HEADS_FIELD_NUMBER: _ClassVar[int]
    JOINT_ACTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    GRAPHS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    ACTION_MASKS_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOUR_LOG_PROBS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    FINAL_GRAPHS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    EPISODE_RETURNS_FIELD_NUMBER: _ClassVar[int]
    actor_id: str
    sequence: int
    env_id: str
    schema_name: str
    length: int
    num_heads: int
    joint_action_count: int
    graphs: GraphState
    actions: bytes
    action_masks: bytes
    behaviour_log_probs: bytes
    rewards: bytes
    terminated: bytes
    truncated: bytes
    final_graphs: GraphState
    policy_versions: bytes
    episode_returns: bytes
    def __init__(self, actor_id: _Optional[str] = ..., sequence: _Optional[int] = ..., env_id: _Optional[str] = ..., schema_name: _Optional[str] = ..., length: _Optional[int] = ..., num_heads: _Optional[int] = ..., joint_action_count: _Optional[int] = ..., graphs: _Optional[_Union[GraphState, _Mapping]] = ..., actions: _Optional[bytes] = ..., action_masks: _Optional[bytes] = ..., behaviour_log_probs: _Optional[bytes] = ..., rewards: _Optional[bytes] = ..., terminated: _Optional[bytes] = ..., truncated: _Optional[bytes] = ..., final_graphs: _Optional[_Union[GraphState, _Mapping]] = ..., policy_versions: _Optional[bytes] = ..., episode_returns: _Optional[bytes] = ...) -> None: ...

class SampledItem(_message.Message):
    __slots__ = ("index", "key", "weight", "encoding", "uncompressed_size", "trajectory", "trace_parent")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    UNCOMPRESSED_SIZE_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORY_FIELD_NUMBER: _ClassVar[int]
    TRACE_PARENT_FIELD_NUMBER: _ClassVar[int]
    index: int
    key: int
    weight: float
    encoding: ContentEncoding
    uncompressed_size: int
    trajectory: bytes
    trace_parent: str
    def __init__(self, index: _Optional[int] = ..., key: _Optional[int] = ..., weight: _Optional[float] = ..., encoding: _Optional[_Union[ContentEncoding, str]] = ..., uncompressed_size: _Optional[int] = ..., trajectory: _Optional[bytes] = ..., trace_parent: _Optional[str] = ...) -> None: ...

class SampledBatch(_message.Message):
    __slots__ = ("batch_id", "items", "buffer_size", "beta", "created_at_ns", "replay_id")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    BUFFER_SIZE_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    REPLAY_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    items: _containers.RepeatedCompositeFieldContainer[SampledItem]
    buffer_size: int
    beta: float
    created_at_ns: int
    replay_id: str
    def __init__(self, batch_id: _Optional[int] = ..., items: _Optional[_Iterable[_Union[SampledItem, _Mapping]]] = ..., buffer_size: _Optional[int] = ..., beta: _Optional[float] = ..., created_at_ns: _Optional[int] = ..., replay_id: _Optional[str] = ...) -> None: ...

class PriorityUpdate(_message.Message):
    __slots__ = ("batch_id", "indices", "keys", "priorities", "learner_step", "rejected_indices", "rejected_keys")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    INDICES_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    LEARNER_STEP_FIELD_NUMBER: _ClassVar[int]
    REJECTED_INDICES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_KEYS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    indices: _containers.RepeatedScalarFieldContainer[int]
    keys: _containers.RepeatedScalarFieldContainer[int]
    priorities: _containers.RepeatedScalarFieldContainer[float]
    learner_step: int
    rejected_indices: _containers.RepeatedScalarFieldContainer[int]
    rejected_keys: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, batch_id: _Optional[int] = ..., indices: _Optional[_Iterable[int]] = ..., keys: _Optional[_Iterable[int]] = ..., priorities: _Optional[_Iterable[float]] = ..., learner_step: _Optional[int] = ..., rejected_indices: _Optional[_Iterable[int]] = ..., rejected_keys: _Optional[_Iterable[int]] = ...) -> None: ...

class PolicySnapshot(_message.Message):
    __slots__ = ("policy_id", "version", "weights", "config_json", "sha256", "signature", "algo", "learner_step", "created_at_ns", "key_id")
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ALGO_FIELD_NUMBER: _ClassVar[int]
    LEARNER_STEP_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    policy_id: str
    version: int
    weights: bytes
    config_json: str
    sha256: bytes
    signature: bytes
    algo: str
    learner_step: int
    created_at_ns: int
    key_id: str
    def __init__(self, policy_id: _Optional[str] = ..., version: _Optional[int] = ..., weights: _Optional[bytes] = ..., config_json: _Optional[str] = ..., sha256: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., algo: _Optional[str] = ..., learner_step: _Optional[int] = ..., created_at_ns: _Optional[int] = ..., key_id: _Optional[str] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("source_topic", "partition", "offset", "reason", "detail", "original_key", "original_value", "original_size", "failed_at_ns", "consumer")
    SOURCE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_KEY_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_VALUE_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_NS_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    source_topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    original_key: bytes
    original_value: bytes
    original_size: int
    failed_at_ns: int
    consumer: str
    def __init__(self, source_topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., original_key: _Optional[bytes] = ..., original_value: _Optional[bytes] = ..., original_size: _Optional[int] = ..., failed_at_ns: _Optional[int] = ..., consumer: _Optional[str] = ...) -> None: ...
