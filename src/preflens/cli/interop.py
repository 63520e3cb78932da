"""Commands that move data between preflens and other tools: import-ap and export-ap (AnnotatedPairs)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import ConfigError
from . import cli
from ._options import fail_soft, open_run
from ._render import out, shown


@cli.command("import-ap")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="The run folder to write.")
@click.option("--domain-key", help="The comparison metadata key that holds the domain (default: 'domain' when the "
                                   "comparisons have it; otherwise one domain).")
@click.option("--default-domain", default="default", show_default=True, help="Domain of comparisons without one.")
@fail_soft
def import_ap(source: str, out_dir: str, domain_key: str | None, default_domain: str) -> None:
    """Read an AnnotatedPairs file (ICAI, Feedback Forensics) into a run folder: its pairs, every annotator's
    preferences as a mechanism, and its principles' votes as given concept features, ready for
    'preflens fit' with no LLM call."""
    from ..annotated_pairs import read_annotated_pairs
    from ..data import load_pairs
    from ..features import save_features
    from ..stages import ingest_stage

    imported = read_annotated_pairs(source, domain_key=domain_key, default_domain=default_domain)
    folder = Path(out_dir)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    pairs_file = folder / "data" / "pairs.jsonl"
    with pairs_file.open("w", encoding="utf-8") as handle:
        for record in imported.records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    options = {"id_col": "id", "domain_col": "domain", "label_cols": dict(imported.mechanisms)}
    dataset = load_pairs(pairs_file, **options)  # type: ignore[arg-type]
    with open_run(out_dir) as runner:
        runner.run(ingest_stage(str(pairs_file), options, dataset=dataset))
        if len(imported.concepts):
            imported.concepts.save(runner.context.folder.file("concepts.json"))
            save_features(imported.features, runner.context.folder.file("features.parquet"))
    out.print(f"{shown(source)}: {len(imported.records)} pairs, {len(dataset.domains)} domain(s), "
              f"{len(imported.mechanisms)} mechanism(s) ({shown(', '.join(imported.mechanisms))}), "
              f"{len(imported.concepts)} principle(s) as concepts")
    for note in imported.notes:
        out.print(f"  note: {shown(note)}")
    if len(dataset) < len(imported.records):
        out.print(f"  note: {len(imported.records) - len(dataset)} pair(s) did not pass preflens's checks; "
                  f"see: preflens validate {shown(str(pairs_file))}")
    nxt = f"preflens fit {out_dir}" if len(imported.concepts) else f"preflens run {pairs_file} --out {out_dir}"
    out.print(f"Wrote {shown(out_dir)}; next: {shown(nxt)}", markup=False)


@cli.command("export-ap")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--default", "default", help="The mechanism that becomes the default annotator (default: human, or "
                                           "the first).")
@click.option("--name", "dataset_name", help="The dataset name in the file's metadata (default: the run folder's).")
@fail_soft
def export_ap(run_dir: str, target: str, default: str | None, dataset_name: str | None) -> None:
    """Write a run's pairs, mechanisms and concept features as an AnnotatedPairs 2.0 file, which Feedback
    Forensics opens: mechanisms become annotators, concepts become principles with their per-pair votes."""
    from ..annotated_pairs import annotated_pairs

    with open_run(run_dir) as runner:
        context = runner.context
        context.require("pairs.parquet", f"'{run_dir}' has no pairs; run 'preflens validate FILE --out {run_dir}'")
        mechanisms = context.pairs.mechanisms
        if default is not None and default not in mechanisms:
            raise ConfigError(f"--default {default}: no such mechanism in {run_dir}; it has: "
                              f"{', '.join(mechanisms) or 'none'}")
        has_features = context.exists("features.parquet") or context.exists("measured.parquet")
        concepts = context.concepts if has_features else None
        features = context.features if has_features else None
        judges = {p.name.split(".")[0] for p in (context.folder.path / "judgments").glob("*.labels.parquet")}
        document = annotated_pairs(context.pairs.frame, mechanisms, concepts, features,
                                   dataset_name=dataset_name or Path(run_dir).resolve().name, default=default,
                                   judges=judges)
    path = Path(target)
    try:
        path.write_text(json.dumps(document, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{target}: cannot write it: {error.strerror or error}") from error
    out.print(f"Wrote {shown(target)}: {len(document['comparisons'])} comparisons, {len(mechanisms)} mechanism(s) "
              f"and {len(concepts or [])} concept(s) as annotators (AnnotatedPairs {document['metadata']['version']})")
