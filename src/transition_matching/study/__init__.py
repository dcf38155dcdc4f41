"""The quality-vs-NFE study behind benchmarks/tm_quality_vs_nfe.py: FM, DTM, ARTM and FHTM on one backbone, sample
quality against backbone evaluations and sampling wall time.

plan: data sets, modes (full, quick, and the paper's regime: paper, paper_quick, paper_long), the cells (data set, seed, model)
and their stored rows; workers: training, evaluation and the scheduling of cells on worker processes; aggregate:
means over seeds, headline numbers, the cost model; page: the markdown page, plots and JSON; runner: run_study,
one resumable invocation. For the paper's regime: budget (calibration, equal-compute steps, the time estimate),
quality (curves while training, data-vs-data floors, sample grids), convergence (their part of the page).
The DTM ablation behind benchmarks/tm_dtm_ablation.py (levers added one at a time to DTM 16x4 on digits, at
equal compute) reuses all of these: ablation (its mode, resumable runner) and ablation_page (table, verdict, page).
"""
