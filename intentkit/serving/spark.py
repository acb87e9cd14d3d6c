"""Label a text column on a Spark cluster (optional extra `spark`; Java 17 from the system).

    from intentkit.serving import spark as intentkit_spark
    labelled = intentkit_spark.label_column(df, "text", "filesTech")   # lazy, like any transform
    labelled.write.parquet("labelled.parquet")

How: `mapInPandas` hands each executor's Python worker Arrow batches of rows; the worker opens
one Predictor (NumPy runtime: no TensorFlow) the first time and keeps it for every later batch
and task (Spark reuses its Python workers). The run is shipped with the job: the driver packs the
published run's files into one archive (`SparkContext.addArchive`), and every executor checks
the unpacked manifest's sha256 against the driver's before the Predictor verifies each file
against that manifest. On a cluster whose executors already hold the run (`spark-submit
--archives run.tar.gz#run`, see docs/export.md), pass `ship=False` and the path they see.

A row whose text is null or not a string gets the fallback (confidence 0), never a failed task.
An executor that cannot open the run fails the job; `run_job` turns that into one ArtifactError
line instead of the JVM's and Python's stacks.
"""
import json
import os
import shutil
import sys
import tarfile
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from .. import artifacts
from ..errors import ArtifactError, ConfigError, MissingExtra

INSTALL_HINT = ("pip install 'intentkit[spark]' (and Java 17: apt-get install "
                "openjdk-17-jre-headless)")
ARCHIVE_NAME = "intentkit-run.tar.gz"
OUTPUT_COLUMNS = (("intent", "string"), ("confidence", "double"), ("fallback", "boolean"),
                  ("top_k", "string"), ("entities", "string"))
# What an executor's error starts with, so that the driver can find the one line in the stacks.
EXECUTOR_ERROR = "intentkit executor: "
FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".json": "json",
           ".txt": "text"}


def _pyspark():
    try:
        import pyspark
        return pyspark
    except ImportError:
        raise MissingExtra(f"Spark labelling needs pyspark; {INSTALL_HINT}") from None


def run_files(model_dir):
    """The files of the published run in `model_dir`, resolved through its links, that a
    Predictor reads: {name inside the archive: real path}. Those are what its manifest lists
    (every file a Predictor opens is verified against it), but what only people read."""
    model_dir = Path(model_dir)
    run = artifacts.open_published(model_dir, "all")  # verified here first
    names = [artifacts.MANIFEST_FILE, *(
        name for name in run.manifest["files"]
        if name.split("/")[0] not in _NOT_READ_BY_A_PREDICTOR)]
    return {name: Path(os.path.realpath(model_dir / name)) for name in names}


_NOT_READ_BY_A_PREDICTOR = {artifacts.HISTORY_PLOT, artifacts.MODEL_CARD_FILE,
                            artifacts.CONFIG_FILE, artifacts.REPORT_DIR}


def pack_run(model_dir, archive):
    """A tar.gz of the run (what `--archives` ships too); returns the manifest's sha256."""
    files = run_files(model_dir)
    with tarfile.open(archive, "w:gz") as tar:
        for name, path in files.items():
            tar.add(path, arcname=name)
    return artifacts.sha256(files[artifacts.MANIFEST_FILE])


_predictors = {}
_predictors_lock = threading.Lock()


def executor_predictor(run_dir, manifest_sha256=None, use_ensemble=None, runtime="auto"):
    """The Predictor of this Python process for a run directory (opened once, verified)."""
    key = (str(run_dir), manifest_sha256, use_ensemble, runtime)
    with _predictors_lock:
        if key not in _predictors:
            from .predictor import Predictor
            run_dir = Path(run_dir)
            manifest = run_dir / artifacts.MANIFEST_FILE
            try:
                if manifest_sha256 and artifacts.sha256(manifest) != manifest_sha256:
                    raise ArtifactError(f"{manifest}: not the run the driver shipped (its "
                                        "sha256 differs)")
                _predictors[key] = Predictor(run_dir / artifacts.MODEL_FILE,
                                             run_dir / artifacts.PREPROCESSOR_FILE,
                                             use_ensemble=use_ensemble, runtime=runtime,
                                             cache_size=0)
            except (OSError, ArtifactError) as error:
                reason = (f"{error.filename}: {error.strerror}" if isinstance(error, OSError)
                          else str(error))
                raise RuntimeError(f"{EXECUTOR_ERROR}cannot open the run in {run_dir} on "
                                   f"{os.uname().nodename}: {reason}") from None
        return _predictors[key]


def label_texts(predictor, texts, top_k=3, threshold=None, margin=None):
    """(intent, confidence, fallback, top_k JSON, entities JSON) lists of texts; a null or
    non-string text gets the fallback with confidence 0 and no entities."""
    texts = list(texts)
    valid = [i for i, text in enumerate(texts) if isinstance(text, str)]
    answers = dict(zip(valid, predictor.predict_batch([texts[i] for i in valid], top_k,
                                                      threshold, margin)))
    none = {"intent": predictor.fallback_intent, "confidence": 0.0, "fallback": True,
            "top_k": [], "entities": []}
    rows = [answers.get(i, none) for i in range(len(texts))]
    return ([r["intent"] for r in rows], [r["confidence"] for r in rows],
            [r["fallback"] for r in rows], [json.dumps(r["top_k"]) for r in rows],
            [json.dumps(r["entities"], ensure_ascii=False) for r in rows])


def _labeller(text_column, run_dir, manifest_sha256, archive, answering):
    """The function mapInPandas runs on executors (pickled with its arguments)."""
    def label(batches):
        directory = run_dir
        if archive is not None:
            from pyspark import SparkFiles
            directory = SparkFiles.get(archive)
        elif not Path(directory).is_absolute() and not Path(directory).exists():
            # `spark-submit --archives run.tar.gz#run`: YARN and Kubernetes unpack it as `run`
            # in the executor's directory, local and standalone masters among SparkFiles.
            from pyspark import SparkFiles
            if Path(SparkFiles.get(directory)).exists():
                directory = SparkFiles.get(directory)
        predictor = executor_predictor(directory, manifest_sha256, answering.use_ensemble,
                                       answering.runtime)
        for frame in batches:
            texts = [None if value is None or value != value else value  # NaN is null
                     for value in frame[text_column].tolist()]
            intent, confidence, fallback, ranked, entities = label_texts(
                predictor, texts, answering.top_k, answering.threshold, answering.margin)
            yield frame.assign(intent=intent, confidence=confidence, fallback=fallback,
                               top_k=ranked, entities=entities)
    return label


class Answering(NamedTuple):
    """How executors answer: the Predictor's options (`intentkit predict`'s of the same name)."""
    top_k: int = 3
    threshold: float | None = None
    margin: float | None = None
    use_ensemble: bool | None = None
    runtime: str = "auto"


def label_column(df, text_column, model_dir, ship=True, answering=Answering()):
    """`df` with the columns intent, confidence, fallback, top_k and entities (both JSON) added for
    `text_column`. `ship`: pack the run in `model_dir` on the driver and send it with the job;
    False: `model_dir` is where every executor already finds the run."""
    _pyspark()
    if text_column not in df.columns:
        raise ConfigError(f"the DataFrame has no column {text_column!r} (it has "
                          f"{', '.join(df.columns)}); pass --text-column")
    clash = [name for name, _ in OUTPUT_COLUMNS if name in df.columns]
    if clash:
        raise ConfigError(f"the DataFrame already has column(s) {', '.join(clash)}: rename them")
    archive = manifest_sha256 = None
    if ship:
        spark_context = df.sparkSession.sparkContext
        scratch = Path(tempfile.mkdtemp(prefix="intentkit-spark-"))
        manifest_sha256 = pack_run(model_dir, scratch / ARCHIVE_NAME)
        # Named by its content: a second run in the same session gets a second archive.
        archive = f"intentkit-run-{manifest_sha256[:16]}.tar.gz"
        os.replace(scratch / ARCHIVE_NAME, scratch / archive)
        if archive not in {Path(p).name for p in spark_context.listArchives}:
            spark_context.addArchive(str(scratch / archive))
    schema = df.schema.simpleString()[len("struct<"):-1]
    added = ",".join(f"{name}:{kind}" for name, kind in OUTPUT_COLUMNS)
    return df.mapInPandas(
        _labeller(text_column, None if ship else str(model_dir), manifest_sha256, archive,
                  answering),
        f"struct<{schema + ',' if schema else ''}{added}>")


def one_line(error):
    """Our executor's error line inside a Spark failure's text, or None."""
    text = str(error)
    for line in text.splitlines():
        if EXECUTOR_ERROR in line:
            return line[line.index(EXECUTOR_ERROR) + len(EXECUTOR_ERROR):].strip()
    return None


@contextmanager
def run_job():
    """Runs Spark actions; an executor that could not open the run raises one ArtifactError
    line (the Spark error kept as its cause)."""
    try:
        yield
    except Exception as error:
        line = one_line(error)
        if line is None:
            raise
        raise ArtifactError(line) from error


def file_format(path, given=None):
    """Spark's reader/writer name for a path, by `given` or by its extension."""
    if given:
        return given
    kind = FORMATS.get(Path(str(path).rstrip("/")).suffix.lower())
    if kind is None:
        raise ConfigError(f"{path}: cannot tell its format from its name; name it .parquet, "
                          ".csv, .jsonl (or .json) or .txt")
    return kind


def _is_local(path):
    """Whether a path is on this machine's file system (not hdfs://, s3a://, ...)."""
    return "://" not in str(path) or str(path).startswith("file://")


def _local(path):
    return Path(str(path).removeprefix("file://"))


def _is_spark_output(path):
    """A directory a Spark job wrote (its _SUCCESS marker): what an earlier run left."""
    return (path / "_SUCCESS").is_file()


def check_files(source, out, in_format=None, out_format=None):
    """(input format, output format), once the input exists and the output is new or an
    earlier Spark output (never someone's other files); ConfigError otherwise. Local paths
    are checked here, before a JVM starts; a cluster's (hdfs://, s3a://) by Spark."""
    in_format, out_format = file_format(source, in_format), file_format(out, out_format)
    if out_format == "text":
        raise ConfigError(f"-o/--out {out}: a text file holds one column; write .parquet, "
                          ".csv or .jsonl")
    if _is_local(source) and not _local(source).exists():
        raise ConfigError(f"--file {source}: no such file or directory")
    if _is_local(out):
        target = _local(out)
        if target.exists() and not (target.is_dir() and _is_spark_output(target)):
            raise ConfigError(f"-o/--out {out}: exists and is not an earlier Spark output (no "
                              "_SUCCESS in it); choose a new name or remove it")
        if not target.parent.is_dir():
            raise ConfigError(f"-o/--out {out}: no such directory {target.parent}")
    return in_format, out_format


def check_java():
    """MissingExtra unless pyspark is installed and can start a JVM (JAVA_HOME or PATH)."""
    _pyspark()
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and Path(java_home, "bin", "java").is_file()) and not shutil.which("java"):
        raise MissingExtra("Spark needs Java 17 or later (no `java` on PATH and no JAVA_HOME): "
                           "apt-get install openjdk-17-jre-headless")


def session(master=None, app_name="intentkit", quiet=True):
    """A SparkSession for the command line: Arrow on, progress bars and logs off (quiet).
    `master` None: the one spark-submit was given (it starts this Python with the gateway's
    port), else local[2]."""
    _pyspark()
    from pyspark.sql import SparkSession
    if master is None and "PYSPARK_GATEWAY_PORT" not in os.environ:
        master = "local[2]"
    builder = SparkSession.builder.master(master) if master else SparkSession.builder
    builder = (builder.appName(app_name)
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.ui.enabled", "false"))
    if quiet:
        # The JVM's log4j config: nothing below FATAL (a failed task's Java stack included).
        config = Path(tempfile.mkdtemp(prefix="intentkit-spark-log-")) / "log4j2.properties"
        config.write_text("rootLogger.level = fatal\nrootLogger.appenderRef.stderr.ref = err\n"
                          "appender.console.type = Console\nappender.console.name = err\n"
                          "appender.console.target = SYSTEM_ERR\n"
                          "appender.console.layout.type = PatternLayout\n"
                          "appender.console.layout.pattern = %m%n\n")
        options = f"-Dlog4j2.configurationFile=file:{config}"
        builder = (builder.config("spark.driver.extraJavaOptions", options)
                   .config("spark.executor.extraJavaOptions", options))
    spark = builder.getOrCreate()
    if spark.sparkContext.master.startswith("local"):
        # Local executors run this Python (with intentkit and pyarrow), not the first python3
        # on PATH; a cluster's Python is the submitter's choice (PYSPARK_PYTHON).
        spark.sparkContext.pythonExec = sys.executable
    return spark


def predict_file(spark, source, out, model_dir, text_column="text", in_format=None,
                 out_format=None, ship=True, answering=Answering()):
    """Labels a Parquet/CSV/JSON-lines/text file (or directory) into `out`, a Spark output
    directory, and returns its row count. A local `out` is written beside it and put in place
    once the job succeeded (an earlier output replaced only then; a failed job leaves nothing);
    on a cluster's file system an existing `out` fails the job rather than being deleted."""
    in_format, out_format = check_files(source, out, in_format, out_format)
    reader = spark.read.option("header", "true") if in_format == "csv" else spark.read
    df = reader.format(in_format).load(str(source))
    if in_format == "text" and text_column not in df.columns:
        df = df.withColumnRenamed("value", text_column)
    labelled = label_column(df, text_column, model_dir, ship, answering)
    writer = labelled.write.mode("errorifexists")
    if out_format == "csv":
        writer = writer.option("header", "true")
    if not _is_local(out):
        with run_job():
            writer.format(out_format).save(str(out))
        written = str(out)
    else:
        target = _local(out)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.spark-", dir=target.parent))
        try:
            with run_job():
                writer.format(out_format).save(str(scratch / "output"))
            artifacts.replace_directory(scratch / "output", target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        written = str(target)
    return spark.read.format(out_format).option("header", "true").load(written).count()

