"""Dashboard figures import plotly's bundle from the workbench when its Voila server serves it."""

from __future__ import annotations

import plotly.graph_objects as go

from workbench.views.figures import BUNDLE_ENV, figure_class, figure_widget


def test_without_the_server_a_figure_is_plotlys_own(monkeypatch):
    monkeypatch.delenv(BUNDLE_ENV, raising=False)
    fig = figure_widget(data=[go.Bar(y=[1, 2])])
    assert isinstance(fig, go.FigureWidget) and len(fig._esm) > 1_000_000  # the whole bundle rides along


def test_under_the_server_a_figure_carries_two_lines_that_import_the_bundle(monkeypatch):
    url = "/cqa/voila/cqa-static/widgetbundle.js?v=7"
    monkeypatch.setenv(BUNDLE_ENV, url)
    fig = figure_widget(data=[go.Bar(y=[1, 2])])
    assert isinstance(fig, go.FigureWidget) and fig.data[0].y == (1, 2)
    assert fig._esm.splitlines() == [f'const bundle = await import(new URL("{url}", document.baseURI).href);',
                                     "export default bundle.default;"]
    assert isinstance(fig, figure_class(url)) and figure_class(url) is figure_class(url)  # one class per address
