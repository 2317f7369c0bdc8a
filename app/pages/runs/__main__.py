from app.pages.runs.page import main

main()
