"""Cohort ids from user attributes: bands, gender x age, region, platform, clusters, combinations."""

from __future__ import annotations

import pandas as pd
import pytest

from recommender.errors import ConfigError
from indexer.cohorts import assign_user_cohorts, combined_cohort_id, parse_combined_cohorts


def test_age_bands_follow_the_documented_edges_as_of_the_year_of_now():
    years = [2009, 2008, 2002, 2001, 1992, 1991, 1982, 1981, 1972, 1971, 1930, None, 1800, 2030]
    users = pd.DataFrame({"user_id": [str(k) for k in range(len(years))], "birth_year": years})
    cohorts = assign_user_cohorts(users, now="2026-06-01").set_index("user_id")["cohort"]
    expected = ["<18", "18-24", "18-24", "25-34", "25-34", "35-44", "35-44", "45-54", "45-54", "55+", "55+"]
    assert [cohorts[str(k)] for k in range(11)] == [f"age:{band}" for band in expected]
    assert not {"11", "12", "13"} & set(cohorts.index)  # unknown, 226 years old, not born yet


def test_each_user_gets_every_cohort_its_attributes_allow():
    users = pd.DataFrame({
        "user_id": ["1", "2", "3"],
        "gender": ["F", None, "x"],
        "birth_year": [2000, 1950, None],
        "region": ["Old Town", "north", None],
        "platform": ["ios", None, "web"],
    })
    cohorts = assign_user_cohorts(users, now="2026-01-01", clusters={"1": 4, "3": 0}, combined=["region+age"])
    by_user = cohorts.groupby("user_id")["cohort"].apply(set).to_dict()
    assert by_user["1"] == {"g:f", "age:25-34", "ga:f:25-34", "region:old_town", "platform:ios", "cluster:4",
                            "region+age:old_town:25-34"}
    assert by_user["2"] == {"age:55+", "region:north", "region+age:north:55+"}
    assert by_user["3"] == {"platform:web", "cluster:0"}  # "x" is not a gender


def test_a_users_cohorts_come_most_specific_first():
    users = pd.DataFrame({"user_id": ["1"], "gender": ["m"], "birth_year": [1990], "region": ["south"],
                          "platform": ["web"]})
    cohorts = assign_user_cohorts(users, now="2026-01-01", clusters={"1": 2}, combined=["g+platform"])
    assert cohorts["cohort"].tolist() == [
        "ga:m:35-44", "g:m", "age:35-44", "cluster:2", "region:south", "platform:web", "g+platform:m:web"
    ]
    assert combined_cohort_id(("region", "age"), ("north", "25-34")) == "region+age:north:25-34"


def test_missing_optional_columns_mean_unknown():
    cohorts = assign_user_cohorts(pd.DataFrame({"user_id": ["1"], "region": ["south"]}), now="2026-01-01")
    assert cohorts["cohort"].tolist() == ["region:south"]


def test_combined_specs_must_name_two_known_axes():
    assert parse_combined_cohorts(["region+age", "g + platform"]) == [("region", "age"), ("g", "platform")]
    for bad in ("region", "region+city", "age+age", "a+b+c"):
        with pytest.raises(ConfigError, match=repr(bad).replace("+", r"\+")):
            parse_combined_cohorts([bad])
