"""Small scenario documents the CLI and plugin tests share: one that passes, one whose
expectation is deliberately wrong, one that does not load."""

APPROVED = """\
id: visa-approved
title: A Visa plastic card is approved online
requirement: "docs/scenarios.md"
tags: [smoke, kernel3]
card: visa_qvsdc_plastic
taps:
  - amount: "12.34"
    expect:
      outcome: Approved
      cryptogram: ARQC
"""

WRONG = """\
id: visa-wrongly-declined
title: A deliberately wrong expectation
requirement: "docs/scenarios.md"
card: visa_qvsdc_plastic
taps:
  - amount: "12.34"
    expect:
      outcome: Declined
      cryptogram: ARQC
"""

BROKEN = """\
id: broken
title: A tap without an amount
requirement: "none"
card: visa_qvsdc_plastic
taps:
  - expect:
      outcome: Approved
"""
