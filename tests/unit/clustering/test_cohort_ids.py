"""Cohort ids (recommender/cohorts.py): the strings the indexer, the job and the query share."""

from __future__ import annotations

import pandas as pd
import pytest

from recommender.cohorts import (
    AGE_BANDS, age_band, age_band_series, is_valid_cohort, parse_cohort, user_cohorts, user_cohorts_frame,
    user_cohorts_joined,
)
from recommender.errors import InvalidRequest


@pytest.mark.parametrize(("birth_year", "band"), [
    (2009, "<18"), (2008, "18-24"), (2002, "18-24"), (2001, "25-34"), (1992, "25-34"), (1991, "35-44"), (1982, "35-44"), (1981, "45-54"),
    (1971, "55+"), (1930, "55+"), (None, None), (2030, None), (1800, None),
])
def test_age_band_edges_as_of_2026(birth_year, band):
    assert age_band(birth_year, year=2026) == band
    series = age_band_series(pd.Series([birth_year], dtype="Int64"), year=2026)
    assert (None if pd.isna(series[0]) else series[0]) == band


def test_user_cohorts_run_from_specific_to_all():
    assert user_cohorts(gender="m", age_band="25-34", region="Seoul Metro", platform="iOS", cluster=7) == [
        "ga:m:25-34", "g:m", "age:25-34", "cluster:7", "region:seoul_metro", "platform:ios", "all"]


def test_nothing_known_means_just_all():
    assert user_cohorts() == ["all"]
    assert user_cohorts(gender="", region="  ") == ["all"]


def test_unknown_gender_is_rejected_with_the_fix():
    with pytest.raises(InvalidRequest, match="'x'"):
        user_cohorts(gender="x")


def test_frame_and_joined_forms_agree_with_the_scalar_form():
    users = pd.DataFrame({"user_id": ["a", "b"], "gender": ["f", None], "age_band": ["<18", "55+"],
                          "region": [None, "Busan"], "platform": ["web", None], "cluster": [2, None]})
    joined = user_cohorts_joined(users)
    long = user_cohorts_frame(users).groupby("user_id", sort=True)["cohort"].agg(list)
    for i, r in users.iterrows():
        expected = user_cohorts(gender=r.gender, age_band=r.age_band, region=r.region, platform=r.platform,
                                cluster=None if pd.isna(r.cluster) else int(r.cluster))
        assert joined[i].split(",") == expected
        assert long[r.user_id] == expected


@pytest.mark.parametrize("cohort", ["all", "g:f", "age:55+", "ga:m:<18", "region:seoul_metro", "platform:ios",
                                    "cluster:12", "region:서울_강남"])
def test_well_formed_cohorts_parse(cohort):
    assert is_valid_cohort(cohort)
    kind, _ = parse_cohort(cohort)
    assert kind == cohort.split(":")[0]


@pytest.mark.parametrize("cohort", ["", "ALL", "g:x", "age:20-29", "region:", "cluster:-1", "ga:m", "region:Seoul", "region:a,b", 7])
def test_malformed_cohorts_are_rejected(cohort):
    assert not is_valid_cohort(cohort)


def test_every_age_band_is_a_valid_cohort():
    assert all(is_valid_cohort(f"age:{b}") and is_valid_cohort(f"ga:f:{b}") for b in AGE_BANDS)


def test_values_in_any_script_survive_normalisation():
    assert user_cohorts(region="서울 강남", platform="Android TV") == ["region:서울_강남", "platform:android_tv", "all"]


def test_series_normalisation_matches_the_scalar_one_and_keeps_the_index():
    from recommender.cohorts import normalize_cohort_series, normalize_cohort_value

    values = pd.Series(["Seoul Metro", None, "  ", "서울", "seoul metro"], index=[5, 6, 7, 8, 9])
    out = normalize_cohort_series(values)
    assert list(out.index) == [5, 6, 7, 8, 9]
    assert [None if pd.isna(v) else v for v in out] == [normalize_cohort_value(v) for v in values]
    assert normalize_cohort_series(pd.Series([None, None])).isna().all()
